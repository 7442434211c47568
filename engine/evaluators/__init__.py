"""Built-in evaluator modules. Each is plain source, loaded exactly like one pushed to the service."""
