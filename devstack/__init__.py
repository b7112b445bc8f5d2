"""The development stack on the local cluster: the Helm chart installed as a site operator
would (`make dev-up`), demo storage endpoints, and the demo itself (`make demo`).

Tests import the same code, so what they check is what developers and the demo run.
"""
