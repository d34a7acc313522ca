#!/usr/bin/env python3
"""Register the deployed function URLs in the edge proxy's discovery registry.

Reads the CloudFormation outputs of the stack (UserServiceFunctionUrl, ProductServiceFunctionUrl,
RegistryTableName) and puts {service, url, weight, expires_at} items in the registry table, the
same items `edge-proxy registry register` writes. Run it after each `sam deploy`, and from a
scheduler (or with a long --ttl-seconds) so the entries do not expire.

Usage: aws_register.py --stack-name NAME [--region REGION] [--ttl-seconds 86400]
Needs AWS credentials in the environment or profile (boto3's usual chain).
"""

import argparse
import time

import boto3

SERVICES = {
    "UserServiceFunctionUrl": "user-service",
    "ProductServiceFunctionUrl": "product-service",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--region")
    parser.add_argument("--ttl-seconds", type=int, default=86400)
    parser.add_argument("--weight", type=int, default=1)
    args = parser.parse_args()

    cloudformation = boto3.client("cloudformation", region_name=args.region)
    stack = cloudformation.describe_stacks(StackName=args.stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    table = outputs["RegistryTableName"]
    dynamodb = boto3.client("dynamodb", region_name=args.region)
    expires_at = int(time.time()) + args.ttl_seconds
    for output, service in SERVICES.items():
        url = outputs[output].rstrip("/")
        dynamodb.put_item(
            TableName=table,
            Item={
                "service": {"S": service},
                "url": {"S": url},
                "weight": {"N": str(args.weight)},
                "expires_at": {"N": str(expires_at)},
            },
        )
        print(f"registered {service} {url} in {table} until {expires_at}")


if __name__ == "__main__":
    main()
