"""Cost rules for TFLite builtin operators (NHWC layout)."""
