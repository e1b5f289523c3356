"""Recorded files: decoding (threads or keyframe segments in processes) and the process command."""
