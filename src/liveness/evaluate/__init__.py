"""Evaluation: ISO/IEC 30107-3 presentation-attack-detection metrics (``metrics``) and threshold policies
(``thresholds``), as pure functions on score arrays (higher score = more likely an attack)."""
