# iac_tf on GPU: the official TensorFlow 2.21 CUDA image plus tf_keras, segmentation-models and
# the package. Build:   docker build -t iac_tf .
# Run an experiment with your data mounted at /data and results written to /runs:
#   docker run --gpus all --rm -v /path/to/data:/data -v $PWD/runs:/runs iac_tf \
#       run /workspace/experiments/sample.yaml --set data.root=/data/MyDataset --set output_dir=/runs
FROM tensorflow/tensorflow:2.21.0-gpu

ENV TF_USE_LEGACY_KERAS=1 \
    SM_FRAMEWORK=tf.keras \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1

WORKDIR /workspace
COPY setup.cfg pyproject.toml README.md ./
COPY iac_tf ./iac_tf
RUN python -m pip install --no-cache-dir --upgrade pip \
 && python -m pip install --no-cache-dir ".[sample]"
COPY experiments ./experiments
COPY data ./data
COPY scripts ./scripts
COPY notebooks ./notebooks

ENTRYPOINT ["iac"]
CMD ["--help"]
