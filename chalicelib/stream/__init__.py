"""The stream stage: DynamoDB stream records -> change messages -> the SNS topic."""
