"""Label signals: safety, quality, topics, language. Each maps an input to label scores."""
