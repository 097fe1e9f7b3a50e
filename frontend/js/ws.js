// The one websocket client: JSON events and binary frames in, JSON messages out; reconnects.
import { decodeFrame } from './protocol.js';

/** The page's `?token=` (or null). */
export function pageToken(loc = window.location) {
  return new URLSearchParams(loc.search).get('token');
}

/** ws(s)://host/ws with the page's token. */
export function socketUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const token = pageToken(loc);
  return `${scheme}//${loc.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ''}`;
}

const OWNER_KEY = 'noisescope-owner';
let fallbackSecret = null; // where sessionStorage is unavailable: one secret for this page's lifetime

/**
 * This page's secret: 32 random bytes as hex, kept in sessionStorage so reloads and reconnects of
 * the tab present the same one (its runs stay its own), while other tabs and pages get their own.
 */
export function ownerSecret(storage = null, crypto = window.crypto) {
  let secret;
  try {
    secret = (storage ?? window.sessionStorage).getItem(OWNER_KEY); // the getter itself may throw
  } catch {
    secret = fallbackSecret; // storage disabled
  }
  if (!secret || !/^[0-9a-f]{64}$/.test(secret)) {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    secret = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    try {
      (storage ?? window.sessionStorage).setItem(OWNER_KEY, secret);
    } catch {
      // storage disabled or full: the fallback below still holds it
    }
  }
  fallbackSecret = secret;
  return secret;
}

export class Socket {
  /**
   * @param {{onEvent: (ev: object) => void, onFrame: (frame: object) => void, onState: (state: string) => void}} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.ws = null;
    this.retryMs = 500;
    this.closedByUs = false;
  }

  connect() {
    this.closedByUs = false;
    this.handlers.onState('connecting');
    const ws = new WebSocket(socketUrl());
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      this.retryMs = 500;
      // First message: who owns the runs this socket starts (see docs/protocol.md).
      ws.send(JSON.stringify({ type: 'hello', owner: ownerSecret() }));
      this.handlers.onState('open');
    };
    ws.onmessage = (msg) => this.#receive(msg.data);
    ws.onclose = () => {
      this.handlers.onState('closed');
      if (!this.closedByUs) setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 8000);
    };
    this.ws = ws;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send one client message; false when not connected. */
  send(message) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  close() {
    this.closedByUs = true;
    this.ws?.close();
  }

  #receive(data) {
    if (typeof data === 'string') {
      let ev;
      try {
        ev = JSON.parse(data);
      } catch {
        this.handlers.onEvent({ type: 'error', code: 'internal', message: 'unreadable message from server' });
        return;
      }
      this.handlers.onEvent(ev);
      return;
    }
    try {
      this.handlers.onFrame(decodeFrame(data));
    } catch (err) {
      this.handlers.onEvent({ type: 'error', code: 'internal', message: `bad image frame: ${err.message}` });
    }
  }
}
