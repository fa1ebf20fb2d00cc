"""Identity providers on the worker's side: what Deskgate did about each IdP user (ledger)."""
