"""Stage 1, what a model costs, framework-free: spec loading, the graph, the op registry, exact counting, memory,
the Estimate, language-model figures, and the Hugging Face / ONNX importers."""
