"""What the hostile-gateway tests share besides their fixtures."""

#: What a command may take beyond its --timeout: scheduling slack, and for
#: a command run as a process of its own, starting Python and importing
#: natfwd (about 0.3 s on CI).
STARTUP_MARGIN = 1.5
