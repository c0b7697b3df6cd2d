"""What fastreg says about itself: logs (``logging``), Prometheus metrics (``metrics``), health
checks (``health``) and the debug listener (``debug``)."""
