"""The Label Studio bridge: start a local server, push the review queue, pull corrections back.

`server` installs and runs Label Studio in its own virtualenv, `client` wraps the SDK with
timeouts and bounded retries, `push`/`pull` move cells and corrections between the run's
store and a project, `training` exports corrected cells as recogniser training data.
"""
