"""Evaluation measures: brand metrics (accuracy, hedging, hallucination) and caption metrics."""
