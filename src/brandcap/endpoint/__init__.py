"""An OpenAI-compatible chat-completions endpoint (vLLM, SGLang, OpenAI, the simulator): the online client
(client) and the batch files of `vllm run-batch` and OpenAI's Batch API (batch_files)."""
