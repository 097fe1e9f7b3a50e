// A gallery card's file actions: download the PNG as served (its `parameters` and `noisescope`
// chunks intact) and delete it after a confirmation inside the card.
import { galleryImageUrl } from './api.js';
import { el } from './controls.js';
import { downloadName } from './gallery_paging.js';

/**
 * @param {object} item  a gallery record
 * @param {string} name  how the card is named to assistive tech ("image 3: red heart")
 * @param {(item: object) => Promise<void>} onDelete  deletes it on the server and refreshes the list
 * @returns {HTMLElement} the actions row
 */
export function fileActions(item, name, onDelete) {
  const download = el('a', { class: 'button download', href: galleryImageUrl(item), download: downloadName(item),
                             'aria-label': `download ${name}` }, 'download');
  const ask = el('button', { type: 'button', class: 'delete', 'aria-label': `delete ${name}` }, 'delete');
  const row = el('div', { class: 'files' }, download, ask);
  const question = el('span', { class: 'confirm-text', text: 'Delete this image?' });
  const yes = el('button', { type: 'button', class: 'danger confirm-delete', 'aria-label': `yes, delete ${name}` },
                 'delete');
  const no = el('button', { type: 'button', class: 'keep', 'aria-label': `keep ${name}` }, 'keep');
  const confirm = el('div', { class: 'files confirm', role: 'group', 'aria-label': `confirm deleting ${name}` },
                     question, yes, no);

  const close = () => {
    confirm.replaceWith(row);
    ask.focus();
  };
  ask.addEventListener('click', () => {
    row.replaceWith(confirm);
    no.focus(); // the safe answer has the focus: Enter or Space keeps the image
  });
  no.addEventListener('click', close);
  confirm.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault(); // Esc here answers "keep"; it does not cancel the run on screen (input.js)
      close();
    }
  });
  yes.addEventListener('click', async () => {
    yes.disabled = no.disabled = true;
    question.textContent = 'Deleting…';
    try {
      await onDelete(item);
    } finally {
      if (confirm.isConnected) { // still shown: it failed, so put the buttons back
        yes.disabled = no.disabled = false;
        question.textContent = 'Delete this image?';
        close();
      }
    }
  });
  return row;
}
