"""The Pi's front panel (R13): RUN heartbeat, DATA TX, RESET, on GPIO through libgpiod or,
without GPIO, on the web UI's virtual front panel; and the systemd watchdog that follows the
same health check.

``panel``: :class:`FrontPanel` (heartbeat, DATA TX pulses, RESET); ``gpio``: the lines;
``health``: what "healthy" means. The web layer knows the panel only through
``host.web.frontpanel_routes.FrontPanelLink`` (it never imports this package).
"""

from host.frontpanel.gpio import GpioLines, line_settings
from host.frontpanel.health import Health, web_serving
from host.frontpanel.panel import FrontPanel

__all__ = ["FrontPanel", "GpioLines", "Health", "line_settings", "web_serving"]
