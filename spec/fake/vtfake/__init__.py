"""Fake VirusTotal server (v3, legacy v2, a storage host, a control API) for the vt specs."""
