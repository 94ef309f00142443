"""KServe on Knative: the InferenceService, the code artifact and the cluster client."""
