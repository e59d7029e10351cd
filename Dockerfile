# Image for every FinCoach service of docker-compose.yml (Airflow, MLflow, Ray, the scorer).
FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client && rm -rf /var/lib/apt/lists/*
COPY requirements.txt pyproject.toml ./
# torch first: the GPU nodes take the CUDA build of the same version, the others a CPU build
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir -r requirements.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
