"""Judges of chat-model answers (no Django). ``data``: the XSTest completions reader (pure Python);
``degeneration``: the degeneration detector (pure Python); ``refusal``: judge artifacts (judge.json, string match,
``load_judge``, ``behaviour``; torch only inside the functions that need it); ``finetune``: the torch half of the
fine-tuned refusal judge."""
