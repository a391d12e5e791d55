"""Built-in traffic: the flows and the frame templates."""
