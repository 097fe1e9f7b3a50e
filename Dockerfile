# Noisescope on an NVIDIA GPU: docker build -t noisescope . && docker run --gpus all -p 7860:7860 noisescope
# Listening on 0.0.0.0 inside the container, so the studio prints a token URL at start.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 NOISESCOPE_DATA_DIR=/data
WORKDIR /opt/noisescope
COPY pyproject.toml README.md ./
COPY app ./app
COPY frontend ./frontend
COPY models ./models
RUN pip install -e ".[openclip]"
VOLUME /data
EXPOSE 7860
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "7860", "--device", "cuda"]
