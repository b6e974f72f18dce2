"""Text in, hidden states out: corpus readers and the model runner."""
