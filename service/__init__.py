"""The serving side: loads the model repository and serves it over REST and gRPC. No TensorFlow here."""
