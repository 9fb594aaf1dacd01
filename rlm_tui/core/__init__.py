"""The engine: events, the call tree, the RLM loop. Imports no Textual."""
