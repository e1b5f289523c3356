"""Live sources: decoder processes, shared-memory frames, the supervisor and the serve loop."""
