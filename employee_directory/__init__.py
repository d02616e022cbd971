"""The Employee Directory: the application half of the IAM roles lesson.

Employees sign in to it through Example Corp's IdP (it is one more OIDC client of the mock IdP), list and
search the employees (a DynamoDB table), see their photos and, if they are in hr, upload new ones (S3). It
holds no AWS key: boto3's default credential chain finds the temporary credentials of its role,
EmployeeWebAppRole, that EC2 (the instance metadata service) or ECS (the container credentials endpoint)
hands it, and it keeps working across their rotations. Its status page shows who it is in AWS and what
its role may not do.

An independent client of the IdP and of AWS: it imports nothing of the broker, the IdP, sso_common or
devstack (tests/test_architecture.py). `python -m employee_directory serve` runs it.
"""
