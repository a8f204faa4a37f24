"""Getting an order through the stages: the Dispatcher, and the routers (`StageClient`) it calls them by."""
