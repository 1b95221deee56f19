-- Health of a Gateway API HTTPRoute or GRPCRoute. Its status is one entry per parent
-- and controller (Weft writes one per Service parent, controllerName
-- weft.dev/mesh-controller), which kstatus does not read. Progressing while a parent
-- has not reported or reported on an older generation; Degraded when a parent did not
-- accept the route, a backend does not resolve, or rules were dropped; Healthy when
-- every parent accepted it. Argo CD runs scripts from argocd-cm without Lua's string
-- library, so this one uses only the base and table libraries.
local hs = { status = "Progressing", message = "Waiting for the route's parents to report status" }
local generation = obj.metadata.generation
local wanted = 0
if obj.spec ~= nil and obj.spec.parentRefs ~= nil then
  wanted = #obj.spec.parentRefs
end
local parents = {}
if obj.status ~= nil and obj.status.parents ~= nil then
  parents = obj.status.parents
end
if #parents < wanted then
  hs.message = #parents .. " of " .. wanted .. " parents reported status"
  return hs
end
local function parentName(p)
  local ref = p.parentRef or {}
  local ns = ref.namespace or obj.metadata.namespace
  return (ref.kind or "Gateway") .. " " .. ns .. "/" .. tostring(ref.name)
end
for _, p in ipairs(parents) do
  if p.conditions == nil then
    hs.message = "Waiting for " .. tostring(p.controllerName) .. " to report on " .. parentName(p)
    return hs
  end
  for _, c in ipairs(p.conditions) do
    if c.observedGeneration ~= nil and c.observedGeneration ~= generation then
      hs.message = "Waiting for " .. tostring(p.controllerName) .. " to observe generation " .. tostring(generation)
      return hs
    end
  end
end
local problems = {}
local unaccepted = nil
for _, p in ipairs(parents) do
  local accepted = false
  for _, c in ipairs(p.conditions) do
    if (c.type == "Accepted" and c.status == "False" and c.reason ~= "Pending")
        or (c.type == "ResolvedRefs" and c.status == "False")
        or (c.type == "PartiallyInvalid" and c.status == "True") then
      table.insert(problems, parentName(p) .. ": " .. c.type .. " " .. c.reason .. ": " .. c.message)
    end
    if c.type == "Accepted" and c.status == "True" then
      accepted = true
    end
  end
  if not accepted and unaccepted == nil then
    unaccepted = parentName(p)
  end
end
if #problems > 0 then
  return { status = "Degraded", message = table.concat(problems, "; ") }
end
if unaccepted ~= nil then
  hs.message = "Waiting for " .. unaccepted .. " to accept the route"
  return hs
end
return { status = "Healthy", message = "Accepted by " .. #parents .. " parents" }
