"""The running service: the wiring that builds each part once, the background tasks, the live
policy set, retention and logging; `service.serve` runs it all until SIGTERM."""
