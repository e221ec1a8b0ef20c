"""A stand-in for the SageMaker XGBoost image's own package, which is not on PyPI: only its
script-mode branches, reproduced from aws/sagemaker-xgboost-container at
43785110b2cfbeb304ae34e535ed7d6edd270a0d (training.py and serving.py are the same at
cb8df91cd44c7b01c53ccf321fd3fdf3eb78adae). It runs under the image's CPython 3.10 in the
environment of tests/image/environment.py, on the toolkit (sagemaker-containers 2.8.6.post2)."""
