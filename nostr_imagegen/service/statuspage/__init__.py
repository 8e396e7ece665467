"""The status page's static files (``index.html``, ``status.js``), served by
``service.metrics.server``: plain HTML and a little JavaScript, no build step."""
