"""The smartPDUs of one LAN find each other and share what they know (R8, R9, pane A of R10).

One module per layer; import from the one you need (this package re-exports nothing):

- ``identity``: this unit's Ed25519 key pair (created at first start, in the data folder),
  its counter, key fingerprints, and the optional site key's proof;
- ``trust``: the site's trust set, signed adopt/remove records that travel with the exchange;
- ``envelope``: the exchanged envelope (protocol 2), its schema and signed statements (pure);
- ``discovery``: this unit's addresses and links, mDNS advertise + browse (python-zeroconf);
  ``peers.static`` adds units mDNS cannot reach;
- ``exchange``: the HTTP exchange with every known address, replay protection;
- ``known``: the known units, adopted or discovered, reachable / offline / forgotten;
- ``directory``: :class:`~host.peers.directory.PeerDirectory`, all of them run as one;
- ``settings``: timing and sources (``[peers]``) and the counters.

The HTTP routes are ``host.web.peers_routes``. Trust is by adoption: any unit found (mDNS,
a post, gossip) is listed as *discovered* with name and address only; an admin adopts it once,
on any unit, and the adoption travels signed to every unit trusting that one. Only adopted
units' own signed statements show figures and alarms. ``peers.site_key``, when set, adopts
the units proving the same key. Nothing here can switch or trip anything (R7): the exchange
carries summaries only.
"""
