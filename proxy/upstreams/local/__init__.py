"""A local ONNX chat model served as a Warden upstream (no network, no model hub)."""
