"""The client side: channels (TLS, retries, round robin), the Classify client, bulk jobs and their
sources, explanation overlays, the health probe and the `onyx classify` command.

Never imports the server: a client install talks to Onyx only over the wire.
"""
