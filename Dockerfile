# A CUDA-capable image that runs `seqtrain`.
#   docker build -t seqtrain .
#   docker run --gpus all -v "$PWD/runs:/work/runs" -v "$HOME/.cache/seqtrain:/root/.cache/seqtrain" \
#       seqtrain fit --task imdb
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

WORKDIR /opt/seqtrain
# LICENSE: pyproject.toml declares it (license-files), so the build needs it
COPY pyproject.toml README.md LICENSE ./
COPY seqtrain ./seqtrain
COPY cli ./cli
# The base image's CUDA torch satisfies the torch requirement, so pip keeps it.
RUN pip install --no-cache-dir . && seqtrain --help > /dev/null

WORKDIR /work
ENTRYPOINT ["seqtrain"]
CMD ["--help"]
