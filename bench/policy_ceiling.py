"""policy_ceiling.py N [TRACE_DIR] - best BHR any online policy can expect on the base preset.

The base preset is an independent reference model (i.i.d. Zipf draws, no churn), so the best
online policy is the static one that knows every object's true request rate (class share x
Zipf pmf of its rank, read back from the key) and keeps the highest rates (BHR: a byte is worth
its object's rate). "true" = that policy's BHR on the trace (first requests miss), "hind" = the
same with the realised counts (hindsight). Traces: TRACE_DIR/base_a{0.8,1.0}_nN_s42.csv.
"""
import numpy as np, sys, re
n=int(sys.argv[1]) if len(sys.argv)>1 else 300000
d=sys.argv[2] if len(sys.argv)>2 else "../traces"
for t,alpha in [("base_a0.8",0.8),("base_a1.0",1.0)]:
    keys=[];sizes=[]
    with open(f"{d}/{t}_n{n}_s42.csv") as f:
        next(f)
        for line in f:
            _,k,s=line.rstrip().split(",")
            keys.append(k); sizes.append(int(s))
    u,inv,cnt=np.unique(np.array(keys),return_inverse=True,return_counts=True)
    sz=np.zeros(len(u),np.int64); sz[inv]=sizes
    # true rates
    cats={"m":(0.25,max(n//60,100)),"s":(0.749,max(n//3,1000)),"f":(0.001,200)}
    H={c:(1.0/np.arange(1,cat+1)**alpha).sum() for c,(sh,cat) in cats.items()}
    rate=np.zeros(len(u))
    for i,k in enumerate(u):
        m=re.search(r"/(m|s|f)(\d+)\.",k) or re.search(r"/(m)(\d+)/",k)
        c=m.group(1); b=int(m.group(2)); sh,cat=cats[c]; r=cat-1-b
        rate[i]=sh*(r+1)**-alpha/H[c]
    wss=sz.sum(); total=np.sum(sizes)
    res=[]
    for p in (1,5,10):
        cap=p/100*wss
        for name,score in (("true",rate),("hind",cnt.astype(float))):
            order=np.argsort(-score,kind="stable")
            used=0; sel=[]
            for j in order:
                if used+sz[j]<=cap: used+=sz[j]; sel.append(j)
                if used>cap*0.999: break
            sel=np.array(sel)
            res.append("%d%% %s %.4f"%(p,name,((cnt[sel]-1)*sz[sel]).sum()/total))
    print(t," | ".join(res))
