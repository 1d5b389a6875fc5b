"""Out-of-distribution detection with genlab's likelihood models.

    likelihood.py   per-image NLL and per-pixel surprise, one entry per model family
    background.py   the "*-mutated" objectives that train background models (Ren et al. 2019)
    compress.py     lossless code lengths L(x) (Serra et al. 2020)
    scores.py       the outlier scores, each with its paper
    metrics.py      AUROC, AUPR, FPR at 95% TPR
    images.py       other datasets and user images in a model's format
    scorer.py       a run (and its background run) -> per-image terms
    run.py          `genlab ood`        user.py   `genlab score`        report.py   figures and pages
    classifier.py   Bayes' rule on p(x | y) and the two reject rules (ambiguity, outlier) of `genlab classify`
    calibration.py  ECE, reliability bins, risk-coverage and AURC
    classify_eval.py `genlab classify --evaluate` (vs the LeNet baseline) and the classification of files
"""

