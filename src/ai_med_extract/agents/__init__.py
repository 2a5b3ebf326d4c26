"""Agents: text extraction, PHI scrubbing, medical data extraction, patient summaries."""
