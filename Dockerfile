# The clinicflow API image (CPU torch; the model runs in the vLLM or `clinicflow model serve` service).
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir ".[postgres]"
EXPOSE 8000
CMD ["clinicflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
