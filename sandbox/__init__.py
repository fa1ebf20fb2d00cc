"""Faithful simulators of Zendesk, ServiceNow and Incode, served as real HTTP servers."""
