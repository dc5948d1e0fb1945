# iac_tf on GPU: the official TensorFlow 2.21 CUDA image plus tf_keras, segmentation-models and
# the package. The entry point is `iac`; `iac grid` runs the paper's experiment grid.
#
# Build (records the code version in the image, since .git is not copied into it):
#   docker build --build-arg IAC_CODE_VERSION=$(git describe --always --dirty) -t iac_tf .
# Reproduce one dataset of the paper (README, "GPU and Docker"): data, slice cache and runs each
# on a mounted folder, files owned by the calling user:
#   docker run --gpus all --rm --user $(id -u):$(id -g) \
#       -v /data/ACDC:/data:ro -v $PWD/cache:/cache -v $PWD/runs:/runs iac_tf \
#       grid experiments/paper/grid.yaml --dataset acdc --data-root /data \
#       --set data.cache_dir=/cache --set output_dir=/runs
FROM tensorflow/tensorflow:2.21.0-gpu

ARG IAC_CODE_VERSION=unknown
ENV TF_USE_LEGACY_KERAS=1 \
    SM_FRAMEWORK=tf.keras \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1 \
    IAC_CODE_VERSION=${IAC_CODE_VERSION} \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp

WORKDIR /workspace
COPY setup.cfg pyproject.toml README.md ./
COPY iac_tf ./iac_tf
RUN python -m pip install --no-cache-dir --upgrade pip \
 && python -m pip install --no-cache-dir ".[sample]"
COPY experiments ./experiments
COPY data ./data
COPY scripts ./scripts
COPY notebooks ./notebooks
# mount points: the dataset (read-only), the slice cache, the run folders, a user's trained U-Net
RUN mkdir -p /data /cache /runs /models && chmod 777 /cache /runs

ENTRYPOINT ["iac"]
CMD ["--help"]
