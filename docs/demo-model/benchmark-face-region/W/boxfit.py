import numpy as np, torch, torch.nn.functional as F
from emo_model.data import read_clip, read_clip_frames, load_index
from emo_model.face import make_detector, detect_face_box
det = make_detector("mediapipe")
rows=[]
for split in ["eval","train"]:
    root=f"runs/demo/data/{split}"
    clips=load_index(root)["clips"][:16]
    for c in clips:
        t=read_clip(root,c["id"]); fr=read_clip_frames(root,c["id"],0,1)[0]
        b=t["face_boxes"][0].float().tolist()
        for up in [256]:
            x=torch.from_numpy(np.array(fr)).permute(2,0,1)[None].float()
            img=F.interpolate(x,size=(up,up),mode="bilinear",align_corners=False).clamp(0,255).round().byte()[0].permute(1,2,0).numpy()
            d=detect_face_box(img,det)
            if d is None: print(c["id"],"no face"); continue
            k=up/128
            dw=(d.x1-d.x0)/k; dh=(d.y1-d.y0)/k; bw=b[2]-b[0]; bh=b[3]-b[1]
            dcx=(d.x0+d.x1)/2/k-(b[0]+b[2])/2; dcy=(d.y0+d.y1)/2/k-(b[1]+b[3])/2
            rows.append((bw/dw,bh/dh,dcx,dcy,bw,bh))
        # window union sizes (12 frames)
        fb=t["face_boxes"].float()
        ws=[];hs=[]
        for s in range(0,len(fb)-10,10):
            w=fb[s:s+10]; ws.append((w[:,2].max()-w[:,0].min())/(w[:,2]-w[:,0]).mean()); hs.append((w[:,3].max()-w[:,1].min())/(w[:,3]-w[:,1]).mean())
        reg=t["face_region"].float()
        print(split,c["id"],"renderer box %.1fx%.1f"%(b[2]-b[0],b[3]-b[1]),"mp %.1fx%.1f"%(dw,dh),"centre off %.1f,%.1f"%(dcx,dcy),"win union/box %.2f,%.2f"%(np.mean(ws),np.mean(hs)),"clip region/box %.2f,%.2f"%((reg[2]-reg[0])/bw,(reg[3]-reg[1])/bh))
r=np.array(rows); print("median renderer/mp w,h ratio", np.median(r[:,0]),np.median(r[:,1]),"centre off",np.median(r[:,2]),np.median(r[:,3]), "n",len(r))
