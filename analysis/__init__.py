"""Scoring, statistics and the report of a study: how well participants in each
condition identified which attributes the model relies on.

The analysis reads the study's responses (its CSV export, or the export's frames handed
in) and the study bundle's ground truth; it imports neither the study server nor torch.
Entry points:

- :func:`analysis.load.read_export` / :func:`analysis.load.responses_from_frames`
- :func:`analysis.scoring.score_study`
- :func:`analysis.report.analyze` (everything, written to a report folder)
- :func:`analysis.simulate.simulate_frames` and friends (simulated participants)
- :func:`analysis.power.power_analysis`
"""
