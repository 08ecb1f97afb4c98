"""Scoring, statistics and the report of a study: how well participants in each
condition identified which attributes the model relies on.

The analysis reads the study database (or its CSV export) and the study bundle's
ground truth; it never imports torch. Entry points:

- :func:`analysis.load.load_responses` / :func:`analysis.load.load_study_attributes`
- :func:`analysis.scoring.score_study`
- :func:`analysis.report.analyze` (everything, written to a report folder)
- :func:`analysis.simulate.simulate_frames` and friends (simulated participants)
- :func:`analysis.power.power_analysis`
"""
