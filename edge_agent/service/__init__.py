"""Running as a service: sd_notify and watchdog, reload planning, the control socket."""
