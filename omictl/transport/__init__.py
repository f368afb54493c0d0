"""The client side of the wire: one httpx client factory, the registry and provider
clients, problem+json -> errors, size caps, retries and registry key pinning.

Import the submodules (``omictl.transport.http``, ``.registry``, ``.provider``,
``.pins``); this package module stays empty so importing it never loads httpx.
"""
