"""omictl: decommission OMI Domain Services, provider and registry, with your master key."""

__version__ = "0.1.0"
