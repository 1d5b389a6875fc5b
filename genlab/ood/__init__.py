"""Out-of-distribution detection with genlab's likelihood models."""

from genlab.ood import background  # noqa: F401  (registers the background-model objectives)
