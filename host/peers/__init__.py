"""The smartPDUs of one LAN find each other and share what they know (R8, R9, pane A of R10).

One module per layer; import from the one you need (this package re-exports nothing):

- ``envelope``: the exchanged envelope, its schema, canonical JSON and HMAC (pure, no I/O);
- ``discovery``: this unit's addresses and links, mDNS advertise + browse (python-zeroconf);
  ``peers.static`` adds units mDNS cannot reach;
- ``exchange``: the signed HTTP exchange with every known address, replay protection;
- ``known``: the known units, merged from envelopes, reachable / offline / forgotten;
- ``directory``: :class:`~host.peers.directory.PeerDirectory`, the four run as one;
- ``settings``: timing and sources (``[peers]``) and the counters.

The HTTP routes are ``host.web.peers_routes``. Trust: the HMAC key is derived from the site
key (``peers.site_key``): a host without it can neither add a unit nor alter one; with an
empty site key the exchange is open (a fixed key: integrity, no authentication). Nothing
here can switch or trip anything (R7): the exchange carries summaries only.
"""
