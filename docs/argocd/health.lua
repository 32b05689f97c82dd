-- Argo CD health of a vaultsync object (ExternalSecret, SecretStore, ClusterSecretStore,
-- ClusterExternalSecret):
-- the operator's one Ready condition, once the operator has acted on the current generation.
-- Healthy: Ready=True. Degraded: Ready=False (the reason and message say why; the operator
-- retries with backoff and keeps the Secret's last data). Progressing: no status yet, or a
-- spec change the operator has not acted on.
local health = {status = "Progressing", message = "Waiting for vaultsync to act on this object"}
if obj.status == nil then
  return health
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  health.message = "Waiting for vaultsync to act on generation " .. generation
  return health
end
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      if condition.status == "True" then
        health.status = "Healthy"
      elseif condition.status == "False" then
        health.status = "Degraded"
      end
      health.message = (condition.reason or "") .. ": " .. (condition.message or "")
      return health
    end
  end
end
return health
