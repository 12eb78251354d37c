"""HTTP: a sharq-server compatible server (``sharq-fast serve``) and proxy clients."""
