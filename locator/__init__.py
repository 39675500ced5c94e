"""The locator service: which agencies hold a record about a child, under keyed pseudonyms only
(docs/locator.md). Agencies publish with the SDK's `connectors.locator.LocatorPublisher`; the
gateway asks through `gateway.locator_client`.

Its modules: `settings` (configuration), `tables` and `store` (what it keeps), `authentication`
(who may call), `app` (HTTP), `cli` (`childlookup locator ...`). Nothing is imported here: the
gateway's CLI registers `locator.cli`, and must not pay for the service's imports to print help.
"""
