"""`genlab app RUN_DIR ...`: a local web app to explore trained runs (samples, latent space, completion,
outlier scores, comparison), served by FastAPI + uvicorn to a page of our own (``static/``).

``views.py`` computes what each view shows through genlab's own functions (``genlab.api.Run``, the samplers'
``draw`` and ``complete``, ``genlab.ood.user.score_user_images``, ``genlab.reports.compare.compare_runs``);
``jobs.py`` runs the slow requests off the request thread with a progress count; ``server.py`` holds the HTTP
routes, the upload limits and the temporary folder. Install with ``pip install -e ".[app]"``.
"""
