"""Deploying to AWS: one definition of a stage's resources, two ways to create them.

`stack` names the resources and fixes their settings; `template` renders them as the
CloudFormation fragment `chalice package --merge-template` takes; `provision` creates
them with boto3 for `chalice deploy`; `policies` gives each function only what it uses.
"""
